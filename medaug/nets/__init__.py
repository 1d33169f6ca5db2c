"""Encoder, decoder and metric networks for 2D and 3D images of any size."""
