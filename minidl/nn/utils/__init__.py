"""Helpers that act on a model's parameters (``torch.nn.utils``)."""

from minidl.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_, get_total_norm
from minidl.nn.utils.convert_parameters import parameters_to_vector, vector_to_parameters

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "parameters_to_vector", "vector_to_parameters"]
