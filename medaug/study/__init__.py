"""The augmentation study: training sets, classifiers over repeated runs, metrics and reports."""
