"""Bit-exact NumPy golden model of EIE: numerics, encoder, image format, functional and
cycle models. The RTL and every testbench are checked against this package."""

from .errors import ConfigError, EIEError, ImageFormatError, InputError
from .image import EIEImage, EncodedLayer
from .csc import encode_indices
from .encoder import encode_layer, encode_network
from .decoder import (decode_bias, decode_bias_indices, decode_image, decode_indices, decode_int_bias,
                      decode_int_weights, decode_weights)
from .balance import balance_image

__all__ = [
    "EIEError", "ImageFormatError", "ConfigError", "InputError",
    "EIEImage", "EncodedLayer",
    "encode_indices", "encode_layer", "encode_network",
    "decode_image", "decode_indices", "decode_int_weights", "decode_weights",
    "decode_bias", "decode_bias_indices", "decode_int_bias",
    "balance_image",
]
