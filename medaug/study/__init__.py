"""The augmentation study (``medaug run``): from a YAML config to ``report.html``.

Configuration and plugins
    ``config`` (the YAML as dataclasses; imports the registries), ``conditions/`` (training-set kinds:
    real, synthetic, real+synthetic, classic), ``classifiers/`` (CNNs, scikit-learn models),
    ``search`` (the optimized CNN's random search).
Running
    ``pipeline`` (the whole study, resumable), ``data`` (cohort, split, preprocessing, image stacks),
    ``simulated`` (``data.simulate``), ``generation`` (per-class generators and their synthetic pools),
    ``training_sets`` (a condition's training set), ``tasks`` (one classifier × condition × run),
    ``executors`` (sequential or Ray), ``network_training`` (a network classifier's training loop
    and model selection), ``metrics`` (sensitivity, specificity, balanced accuracy).
Results
    ``report`` (tables, paired differences, figures), ``html_report`` (``report.html``), ``sanity``
    (what to read before the numbers), ``audit`` (paired bootstrap CIs), ``saved_classifiers``
    (kept models and the validation-selected ones), ``predict`` (``medaug predict``), ``interpret``
    and ``saliency`` (``medaug interpret``).
"""
