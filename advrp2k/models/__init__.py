"""Architectures, pretrained backbones and checkpoint files."""
