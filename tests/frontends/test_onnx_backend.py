"""ONNX conformance: the backend node test cases shipped with the ``onnx`` package, through our importer and
float executor.

Every node test case whose model uses only ops the importer claims (`SUPPORTED_OPS`) is selected. The onnx
package builds those cases in memory (`onnx.backend.test.loader.load_model_tests(kind="node")`; older
releases shipped them as ``data/node/<case>/model.onnx`` plus ``test_data_set_0/*.pb``, which the loader
reads too). Each case is imported with `load_onnx`, run with `run_float`, and compared to the case's expected
outputs with its own tolerances (rtol 1e-3, atol 1e-7 unless the case says otherwise).

Our IR has one float data input whose axis 0 is the batch. The cases feed every operand as a graph input,
so the first input is the data and every other input (weights, bias, shapes, bounds, indices) becomes an
initializer holding the case's value: the form exporters write. A case the importer cannot express must be
listed in `REJECTED` under a documented reason; the test then asserts that the importer refuses it with a
typed one-line error (`UnsupportedOpError` or `ModelError`) matching that reason, never a crash. Every other
selected case must pass.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dse.errors import DseError, ModelError, UnsupportedOpError
from dse.frontends.onnx import SUPPORTED_OPS, load_onnx
from dse.sim.float_exec import run_float

# The onnx release the REJECTED lists were written against: another release adds, renames or drops cases.
WRITTEN_FOR_ONNX = "1.23.2"

# reason -> (why, error type, pattern the importer's message must match)
REASONS: dict[str, tuple[str, type[DseError], str]] = {
    "dtype": ("the data input is not FLOAT, DOUBLE, FLOAT16 or BFLOAT16 (integers, float8, float4, int4...): the "
              "IR computes on float tensors", ModelError, r"element type \w+, expected a float type"),
    "cast": ("a Cast of the data to a type other than FLOAT or DOUBLE: it would round (FLOAT16, BFLOAT16, float8) "
             "or leave the float types, and the IR computes in float32", UnsupportedOpError,
             r"cast of the data to"),
    "batch_constant": ("the second operand is a batch-sized tensor (an Add/Mul/Max/Min operand, a Gemm bias, a MatMul "
                       "stack of matrices): the IR has one data input, and as a constant it differs from sample to "
                       "sample", UnsupportedOpError, r"varies along the batch"),
    "tensor_operand": ("Concat or Sum of the data with a second tensor (a second data input, or a state input): "
                       "the IR has one data input, and these ops take no constant operand", UnsupportedOpError,
                       r"concatenating a tensor with a constant|must be the data tensor, not a constant"),
    "batch_axis": ("the op reduces, moves, slices or merges the batch axis (axis 0), which the IR keeps free: "
                   "Softmax/Flatten/Gather/Slice/Split/Squeeze/Unsqueeze on axis 0, a Transpose that moves it, a "
                   "Reshape that does not keep the batch, Gemm transA, ReduceMean over all axes, MatMul of 1-D data "
                   "(its only axis is the batch), shape arithmetic with the batch size (CenterCropPad's expansion "
                   "takes a Max of it)",
                   UnsupportedOpError, r"batch"),
    "layout": ("a Transpose other than a channel shuffle or a block move (depth to space, space to depth), or a "
               "Split of another axis than the channels (rotary embeddings): the IR keeps each value's axes as they "
               "are and slices only its channel axis", UnsupportedOpError,
               r"only a channel shuffle|slices only a contiguous range of the channel"),
    "not_2d": ("3-D pooling, a 3-D ConvTranspose: the IR's pooling is 2-D (1-D pooling of (N, C, L) runs as 2-D "
               "pooling of the (C, 1, L) image), and so is its transposed convolution (a 1-D one runs as the 2-D "
               "one of the image)", UnsupportedOpError, r"only 2-D is supported|only 1-D and 2-D are supported"),
    "training": ("training mode (BatchNormalization or Dropout with training_mode=1)", UnsupportedOpError,
                 r"training_mode"),
    "extra_output": ("a second output is used (Dropout mask, MaxPool argmax indices): the IR has one float "
                     "output per op", UnsupportedOpError, r"only the op's first output"),
    "no_data_path": ("the output does not depend on a float data input (Shape of the input, Constant)",
                     ModelError, r"does not depend on the data input|exactly one data input, found 0"),
    "not_tensor": ("the input is a sequence or an optional, not a tensor", ModelError, r"is not a tensor"),
    "empty": ("the result is an empty tensor", UnsupportedOpError, r"the slice is empty"),
    "pad_value": ("a constant Pad with a non-zero value: only a zero pad folds into the convolution or pooling "
                  "that reads it", UnsupportedOpError, r"only zero padding is supported"),
    "erf": ("Erf outside GELU: erf has no core-op form; only x * (1 + erf(x / sqrt(2))) / 2, which exporters "
            "write for GELU below opset 20, imports (as Gelu)", UnsupportedOpError,
            r"Erf is supported only inside GELU"),
    "pow": ("Pow outside GELU's tanh form: a power of the data has no core-op form; only x * (1 + tanh(sqrt(2 / pi) "
            "* (x + 0.044715 * x^3))) / 2, which exporters write for GELU below opset 20, imports (as Gelu)",
            UnsupportedOpError, r"only inside GELU's tanh form"),
    "static_shape": ("a per-sample dimension that is symbolic or unknown (the Reduce ops' empty-set cases): the IR "
                     "keeps only the batch free", ModelError, r"symbolic or unknown dimension"),
    "max_over_channels": ("ReduceMax over the channel or feature axis (axis 1): only a max over the spatial axes, "
                          "a global max pooling, has a core-op form", UnsupportedOpError,
                          r"a max over the features or channels"),
    "product": ("a product of the data with itself (ReduceSumSquare's expansion, x * x): a crossbar computes "
                "weighted sums of its inputs, not products; x * x imports only as a part of GELU's tanh form",
                UnsupportedOpError, r"a power of a data tensor is supported only inside GELU's tanh form"),
    "resize": ("a Resize that is not nearest-neighbour or linear upsampling by integer factors: cubic "
               "interpolation, downsampling (linear: also with antialias), a non-integer factor (2 to 7 pixels), a "
               "nearest coordinate transformation and rounding that do not repeat each pixel (half_pixel with "
               "ceil, align_corners with floor), a crop (tf_crop_and_resize), half_pixel_symmetric (opset 19) with "
               "linear, a kept aspect ratio", UnsupportedOpError,
               r"only nearest-neighbour and linear \(bilinear\) upsampling|not each pixel repeated|"
               r"keep_aspect_ratio_policy|only upsampling by integer factors|antialias=1|"
               r"coordinate_transformation_mode '(tf_crop_and_resize|half_pixel_symmetric)'"),
    "clip_bounds": ("a Clip whose min exceeds its max: ONNX defines it (every value becomes max), but no network "
                    "means it; the validation refuses it (issue 17)", ModelError, r"min .* > max"),
}

# Every selected case the importer refuses, by reason (see REASONS).
REJECTED: dict[str, tuple[str, ...]] = {
    "dtype": (
        "test_add_int16", "test_add_int8", "test_add_uint16", "test_add_uint32", "test_add_uint64",
        "test_add_uint8", "test_cast_FLOAT4E2M1_to_FLOAT", "test_cast_FLOAT4E2M1_to_FLOAT16",
        "test_cast_FLOAT8E4M3FNUZ_to_FLOAT", "test_cast_FLOAT8E4M3FNUZ_to_FLOAT16",
        "test_cast_FLOAT8E4M3FN_to_FLOAT", "test_cast_FLOAT8E4M3FN_to_FLOAT16",
        "test_cast_FLOAT8E5M2FNUZ_to_FLOAT", "test_cast_FLOAT8E5M2FNUZ_to_FLOAT16",
        "test_cast_FLOAT8E5M2_to_FLOAT", "test_cast_FLOAT8E5M2_to_FLOAT16", "test_cast_INT2_to_FLOAT",
        "test_cast_INT2_to_FLOAT16", "test_cast_INT2_to_INT8", "test_cast_INT4_to_FLOAT",
        "test_cast_INT4_to_FLOAT16", "test_cast_INT4_to_INT8", "test_cast_UINT2_to_FLOAT",
        "test_cast_UINT2_to_FLOAT16", "test_cast_UINT2_to_UINT8", "test_cast_UINT4_to_FLOAT",
        "test_cast_UINT4_to_FLOAT16", "test_cast_UINT4_to_UINT8", "test_cast_e8m0_FLOAT8E8M0_to_FLOAT",
        "test_cast_e8m0_FLOAT8E8M0_to_FLOAT16", "test_castlike_FLOAT4E2M1_to_FLOAT16_expanded",
        "test_castlike_FLOAT4E2M1_to_FLOAT_expanded", "test_castlike_FLOAT8E4M3FNUZ_to_FLOAT16_expanded",
        "test_castlike_FLOAT8E4M3FNUZ_to_FLOAT_expanded", "test_castlike_FLOAT8E4M3FN_to_FLOAT16_expanded",
        "test_castlike_FLOAT8E4M3FN_to_FLOAT_expanded", "test_castlike_FLOAT8E5M2FNUZ_to_FLOAT16_expanded",
        "test_castlike_FLOAT8E5M2FNUZ_to_FLOAT_expanded", "test_castlike_FLOAT8E5M2_to_FLOAT16_expanded",
        "test_castlike_FLOAT8E5M2_to_FLOAT_expanded", "test_castlike_INT2_to_FLOAT16_expanded",
        "test_castlike_INT2_to_FLOAT_expanded", "test_castlike_INT2_to_INT8_expanded",
        "test_castlike_INT4_to_FLOAT16_expanded", "test_castlike_INT4_to_FLOAT_expanded",
        "test_castlike_INT4_to_INT8_expanded", "test_castlike_UINT2_to_FLOAT16_expanded",
        "test_castlike_UINT2_to_FLOAT_expanded", "test_castlike_UINT2_to_UINT8_expanded",
        "test_castlike_UINT4_to_FLOAT16_expanded", "test_castlike_UINT4_to_FLOAT_expanded",
        "test_castlike_UINT4_to_UINT8_expanded", "test_clip_default_int8_inbounds",
        "test_clip_default_int8_inbounds_expanded", "test_clip_default_int8_max", "test_clip_default_int8_min",
        "test_constantofshape_float_ones", "test_constantofshape_int_shape_zero", "test_constantofshape_int_zeros",
        "test_div_int16", "test_div_int32_trunc", "test_div_int8", "test_div_uint16", "test_div_uint32",
        "test_div_uint64", "test_div_uint8", "test_edge_pad", "test_max_int16", "test_max_int32", "test_max_int64",
        "test_max_int8", "test_max_uint16", "test_max_uint32", "test_max_uint64", "test_max_uint8",
        "test_min_int16", "test_min_int32", "test_min_int64", "test_min_int8",
        "test_min_uint16", "test_min_uint32", "test_min_uint64", "test_min_uint8", "test_maxpool_2d_uint8",
        "test_mul_int16",
        "test_mul_int8", "test_pow_types_int32_float32", "test_pow_types_int32_int32", "test_pow_types_int64_float32",
        "test_pow_types_int64_int64",
        "test_mul_uint16", "test_mul_uint32", "test_mul_uint64", "test_mul_uint8", "test_reduce_max_bool_inputs",
        "test_reduce_max_empty_set_bool", "test_reflect_pad", "test_sub_int16",
        "test_sub_int8", "test_sub_uint16", "test_sub_uint32", "test_sub_uint64", "test_sub_uint8", "test_wrap_pad",
    ),
    "cast": (
        "test_cast_DOUBLE_to_FLOAT16", "test_cast_FLOAT16_to_FLOAT4E2M1", "test_cast_FLOAT16_to_FLOAT8E4M3FN",
        "test_cast_FLOAT16_to_FLOAT8E4M3FNUZ", "test_cast_FLOAT16_to_FLOAT8E5M2",
        "test_cast_FLOAT16_to_FLOAT8E5M2FNUZ", "test_cast_FLOAT16_to_INT2", "test_cast_FLOAT16_to_INT4",
        "test_cast_FLOAT16_to_UINT2", "test_cast_FLOAT16_to_UINT4", "test_cast_FLOAT_to_BFLOAT16",
        "test_cast_FLOAT_to_FLOAT16", "test_cast_FLOAT_to_FLOAT4E2M1", "test_cast_FLOAT_to_FLOAT8E4M3FN",
        "test_cast_FLOAT_to_FLOAT8E4M3FNUZ", "test_cast_FLOAT_to_FLOAT8E5M2", "test_cast_FLOAT_to_FLOAT8E5M2FNUZ",
        "test_cast_FLOAT_to_INT2", "test_cast_FLOAT_to_INT4", "test_cast_FLOAT_to_UINT2",
        "test_cast_FLOAT_to_UINT4", "test_cast_e8m0_FLOAT16_to_FLOAT8E8M0", "test_cast_e8m0_FLOAT_to_FLOAT8E8M0",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN", "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2", "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ",
        "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN", "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ",
        "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2", "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ",
        "test_castlike_DOUBLE_to_FLOAT16_expanded", "test_castlike_FLOAT16_to_FLOAT4E2M1_expanded",
        "test_castlike_FLOAT16_to_FLOAT8E4M3FNUZ_expanded", "test_castlike_FLOAT16_to_FLOAT8E4M3FN_expanded",
        "test_castlike_FLOAT16_to_FLOAT8E5M2FNUZ_expanded", "test_castlike_FLOAT16_to_FLOAT8E5M2_expanded",
        "test_castlike_FLOAT16_to_INT2_expanded", "test_castlike_FLOAT16_to_INT4_expanded",
        "test_castlike_FLOAT16_to_UINT2_expanded", "test_castlike_FLOAT16_to_UINT4_expanded",
        "test_castlike_FLOAT_to_BFLOAT16_expanded", "test_castlike_FLOAT_to_FLOAT16_expanded",
        "test_castlike_FLOAT_to_FLOAT4E2M1_expanded", "test_castlike_FLOAT_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_FLOAT_to_FLOAT8E4M3FN_expanded", "test_castlike_FLOAT_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_FLOAT_to_FLOAT8E5M2_expanded", "test_castlike_FLOAT_to_INT2_expanded",
        "test_castlike_FLOAT_to_INT4_expanded", "test_castlike_FLOAT_to_UINT2_expanded",
        "test_castlike_FLOAT_to_UINT4_expanded", "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FN_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FN_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2_expanded",
    ),
    "batch_constant": (
        "test_add", "test_div", "test_div_example", "test_gemm_default_matrix_bias", "test_matmul_3d",
        "test_max_example", "test_max_float16", "test_max_float32", "test_max_float64", "test_max_two_inputs",
        "test_min_example", "test_min_float16", "test_min_float32", "test_min_float64", "test_min_two_inputs",
        "test_mul", "test_mul_example", "test_prelu_example", "test_sub", "test_sub_example",
    ),
    "tensor_operand": (
        "test_causal_conv_with_state_decode_step_expanded",
        "test_causal_conv_with_state_with_bias_and_past_state_expanded",
        "test_causal_conv_with_state_with_past_state_expanded", "test_concat_1d_axis_0",
        "test_concat_1d_axis_negative_1", "test_concat_2d_axis_0", "test_concat_2d_axis_1",
        "test_concat_2d_axis_negative_1", "test_concat_2d_axis_negative_2", "test_concat_3d_axis_0",
        "test_concat_3d_axis_1", "test_concat_3d_axis_2", "test_concat_3d_axis_negative_1",
        "test_concat_3d_axis_negative_2", "test_concat_3d_axis_negative_3", "test_sum_example",
        "test_sum_two_inputs",
    ),
    "batch_axis": (
        "test_center_crop_pad_crop_and_pad_expanded", "test_center_crop_pad_crop_axes_hwc_expanded",
        "test_center_crop_pad_crop_expanded", "test_center_crop_pad_crop_negative_axes_hwc_expanded",
        "test_center_crop_pad_pad_expanded", "test_flatten_axis0", "test_flatten_axis2", "test_flatten_axis3",
        "test_flatten_negative_axis1",
        "test_flatten_negative_axis2", "test_flatten_negative_axis4", "test_gather_0",
        "test_gather_negative_indices", "test_gemm_all_attributes", "test_gemm_transposeA", "test_matmul_1d_1d",
        "test_matmul_1d_3d", "test_reduce_mean_default_axes_keepdims_example",
        "test_reduce_mean_default_axes_keepdims_random", "test_reduce_l1_default_axes_keepdims_example_expanded",
        "test_reduce_l1_default_axes_keepdims_random_expanded", "test_reduce_max_default_axes_keepdim_example",
        "test_reduce_max_default_axes_keepdims_random", "test_reduce_sum_default_axes_keepdims_example",
        "test_reduce_sum_default_axes_keepdims_random", "test_reshape_allowzero_reordered",
        "test_reshape_negative_extended_dims", "test_reshape_one_dim", "test_reshape_reordered_all_dims",
        "test_slice", "test_slice_default_axes", "test_slice_default_steps", "test_slice_neg_steps",
        "test_logsoftmax_axis_0", "test_slice_negative_axes", "test_softmax_axis_0",
        "test_split_1d_uneven_split_opset18",
        "test_split_equal_parts_1d_opset13", "test_split_equal_parts_1d_opset18",
        "test_split_equal_parts_default_axis_opset13", "test_split_equal_parts_default_axis_opset18",
        "test_split_variable_parts_1d_opset13", "test_split_variable_parts_1d_opset18",
        "test_split_variable_parts_default_axis_opset13", "test_split_variable_parts_default_axis_opset18",
        "test_split_zero_size_splits_opset13", "test_split_zero_size_splits_opset18", "test_squeeze",
        "test_transpose_all_permutations_2", "test_transpose_all_permutations_3", "test_transpose_all_permutations_4",
        "test_transpose_all_permutations_5", "test_transpose_default", "test_unsqueeze_axis_0",
    ),
    "layout": (
        "test_rotary_embedding_3d_input_expanded", "test_rotary_embedding_expanded",
        "test_rotary_embedding_interleaved_expanded", "test_rotary_embedding_no_position_ids_expanded",
        "test_rotary_embedding_no_position_ids_interleaved_expanded",
        "test_rotary_embedding_no_position_ids_rotary_dim_expanded",
        "test_rotary_embedding_with_interleaved_rotary_dim_expanded", "test_rotary_embedding_with_rotary_dim_expanded",
    ),
    "not_2d": (
        "test_averagepool_3d_default",
        "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False",
        "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True",
        "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False",
        "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
        "test_convtranspose_3d",
        "test_averagepool_3d_dilations_small", "test_maxpool_3d_default",
        "test_maxpool_3d_dilations", "test_maxpool_3d_dilations_use_ref_impl",
        "test_maxpool_3d_dilations_use_ref_impl_large",
    ),
    "training": (
        "test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode", "test_training_dropout",
        "test_training_dropout_default", "test_training_dropout_zero_ratio",
    ),
    "extra_output": (
        "test_dropout_default_mask", "test_dropout_default_mask_ratio",
        "test_maxpool_with_argmax_2d_precomputed_pads", "test_maxpool_with_argmax_2d_precomputed_strides",
        "test_training_dropout_default_mask", "test_training_dropout_mask",
        "test_training_dropout_zero_ratio_mask",
    ),
    "no_data_path": (
        "test_constant", "test_shape", "test_shape_clip_end", "test_shape_clip_start", "test_shape_end_1",
        "test_shape_end_negative_1", "test_shape_example", "test_shape_start_1", "test_shape_start_1_end_2",
        "test_shape_start_1_end_negative_1", "test_shape_start_greater_than_end", "test_shape_start_negative_1",
    ),
    "not_tensor": (
        "test_identity_opt", "test_identity_sequence",
    ),
    "empty": (
        "test_slice_start_out_of_bounds",
    ),
    "pad_value": (
        "test_constant_pad", "test_constant_pad_axes", "test_constant_pad_negative_axes",
    ),
    "static_shape": (
        "test_reduce_max_empty_set", "test_reduce_sum_empty_set", "test_reduce_sum_empty_set_non_reduced_axis_zero",
        "test_reduce_sum_square_empty_set_expanded", "test_reduce_l1_empty_set_expanded",
    ),
    "max_over_channels": (
        "test_reduce_max_do_not_keepdims_example", "test_reduce_max_do_not_keepdims_random",
        "test_reduce_max_keepdims_example", "test_reduce_max_keepdims_random",
        "test_reduce_max_negative_axes_keepdims_example", "test_reduce_max_negative_axes_keepdims_random",
    ),
    "product": (
        "test_reduce_sum_square_default_axes_keepdims_example_expanded",
        "test_reduce_sum_square_default_axes_keepdims_random_expanded",
        "test_reduce_sum_square_do_not_keepdims_example_expanded",
        "test_reduce_sum_square_do_not_keepdims_random_expanded", "test_reduce_sum_square_keepdims_example_expanded",
        "test_reduce_sum_square_keepdims_random_expanded",
        "test_reduce_sum_square_negative_axes_keepdims_example_expanded",
        "test_reduce_sum_square_negative_axes_keepdims_random_expanded",
    ),
    "clip_bounds": (
        "test_clip_min_greater_than_max",
    ),
    "pow": (
        "test_pow", "test_pow_bcast_array", "test_pow_bcast_scalar", "test_pow_example",
        "test_pow_types_float32_int32", "test_pow_types_float32_int64", "test_pow_types_float32_uint32",
        "test_pow_types_float32_uint64",
    ),
    "erf": (
        "test_erf",
    ),
    "resize": (
        "test_resize_downsample_scales_cubic", "test_resize_downsample_scales_cubic_A_n0p5_exclude_outside",
        "test_resize_downsample_scales_cubic_align_corners", "test_resize_downsample_scales_cubic_antialias",
        "test_resize_downsample_scales_linear", "test_resize_downsample_scales_linear_align_corners",
        "test_resize_downsample_scales_linear_antialias",
        "test_resize_downsample_scales_linear_half_pixel_symmetric", "test_resize_downsample_scales_nearest",
        "test_resize_downsample_sizes_cubic", "test_resize_downsample_sizes_cubic_antialias",
        "test_resize_downsample_sizes_linear_antialias", "test_resize_downsample_sizes_linear_pytorch_half_pixel",
        "test_resize_downsample_sizes_nearest", "test_resize_downsample_sizes_nearest_not_larger",
        "test_resize_downsample_sizes_nearest_not_smaller", "test_resize_tf_crop_and_resize",
        "test_resize_tf_crop_and_resize_axes_2_3", "test_resize_tf_crop_and_resize_axes_3_2",
        "test_resize_tf_crop_and_resize_extrapolation_value", "test_resize_upsample_scales_cubic",
        "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside",
        "test_resize_upsample_scales_cubic_align_corners", "test_resize_upsample_scales_cubic_asymmetric",
        "test_resize_upsample_scales_linear_half_pixel_symmetric", "test_resize_upsample_sizes_cubic",
        "test_resize_upsample_sizes_nearest", "test_resize_upsample_sizes_nearest_axes_2_3",
        "test_resize_upsample_sizes_nearest_axes_3_2", "test_resize_upsample_sizes_nearest_ceil_half_pixel",
        "test_resize_upsample_sizes_nearest_floor_align_corners", "test_resize_upsample_sizes_nearest_not_larger",
        "test_resize_upsample_sizes_nearest_not_smaller",
        "test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric",
    ),
}

REJECTED_CASES: dict[str, str] = {case: reason for reason, cases in REJECTED.items() for case in cases}


def _array(value: object) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


def _read_pb(path: str) -> np.ndarray:
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


@functools.cache
def _selected_cases() -> dict[str, tuple[onnx.ModelProto, list, list, float, float]]:
    """name -> (model, inputs, expected outputs, rtol, atol) for every node case made only of claimed ops."""
    from onnx.backend.test.loader import load_model_tests

    claimed = set(SUPPORTED_OPS)
    cases = {}
    for case in load_model_tests(kind="node"):
        if case.model is not None:
            model, (inputs, outputs) = case.model, case.data_sets[0]
        elif case.model_dir is not None:  # older onnx: the cases live on disk
            model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
            data_set = os.path.join(case.model_dir, "test_data_set_0")
            inputs = [_read_pb(p) for p in sorted(glob.glob(os.path.join(data_set, "input_*.pb")))]
            outputs = [_read_pb(p) for p in sorted(glob.glob(os.path.join(data_set, "output_*.pb")))]
        else:
            continue
        if all(node.op_type in claimed for node in model.graph.node):
            cases[case.name] = (model, list(inputs), list(outputs), case.rtol, case.atol)
    return cases


def _as_single_input(model: onnx.ModelProto, inputs: Sequence[object]) -> onnx.ModelProto:
    """The case with its first input as the data and every other tensor input as an initializer."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if not graph.input:
        return out
    keep = [graph.input[0]]
    for vi, value in zip(list(graph.input)[1:], list(inputs)[1:], strict=False):
        if value is None or isinstance(value, list | tuple):  # an optional or a sequence: left as it is
            keep.append(vi)
            continue
        tensor = numpy_helper.from_array(_array(value), vi.name)
        graph.initializer.append(tensor)
    del graph.input[:]
    graph.input.extend(keep)
    return out


CASE_NAMES = sorted(_selected_cases())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_node_case(name: str) -> None:
    model, inputs, outputs, rtol, atol = _selected_cases()[name]
    single = _as_single_input(model, inputs)
    reason = REJECTED_CASES.get(name)
    if reason is not None:
        _, error, pattern = REASONS[reason]
        with pytest.raises(error, match=pattern) as err:
            load_onnx(single)
        assert "\n" not in str(err.value)  # one clear line, as the CLI prints it
        return
    graph = load_onnx(single)
    # The IR computes in float32; torch cannot take numpy's bfloat16, so hand it float32 (exact for any
    # FLOAT16/BFLOAT16 data).
    x = _array(inputs[0]).astype(np.float32)
    got = run_float(graph, x)
    assert len(graph.outputs) == len(outputs)
    for out_name, expected in zip(graph.outputs, outputs, strict=True):
        want = _array(expected).astype(np.float64)
        have = got[out_name].numpy().astype(np.float64)
        assert have.shape == want.shape
        # an expected output in BFLOAT16 is the exact value rounded to its 8 significant bits (test_celu_bfloat16)
        bf16 = (expected.data_type == onnx.TensorProto.BFLOAT16 if isinstance(expected, onnx.TensorProto)
                else np.asarray(expected).dtype.name == "bfloat16")
        np.testing.assert_allclose(have, want, rtol=max(rtol, 2.0**-8) if bf16 else rtol, atol=atol)


def test_rejected_cases_are_selected_and_explained() -> None:
    """The lists stay honest: no case twice, every reason documented and used, every entry a selected case."""
    listed = [case for cases in REJECTED.values() for case in cases]
    assert len(listed) == len(set(listed))
    assert set(REJECTED) == set(REASONS)
    assert all(REJECTED.values())
    stale = set(listed) - set(CASE_NAMES)
    if stale and onnx.__version__ != WRITTEN_FOR_ONNX:
        pytest.skip(f"onnx {onnx.__version__} lacks {len(stale)} cases the lists name (written for "
                    f"{WRITTEN_FOR_ONNX})")
    assert not stale


# Claimed ops no backend case can exercise on our data path; tests/frontends/test_onnx_import.py covers them
# against onnxruntime instead.
# (Constant, Shape, Concat and Pad pass in test_center_crop_pad_crop_axes_chw_expanded: a crop and a zero pad whose
# amounts are computed from the input's shape, with Max)
NO_PASSING_CASE = {
    "ConstantOfShape": "its cases take an INT64 shape as the only input",
    "ReduceMax": "every float case takes the max over the channel axis or over all axes; a max over the spatial "
                 "axes (global max pooling) is tested against onnxruntime in tests/frontends/test_onnx_import.py",
    "Erf": "its one case takes erf of the data itself; only GELU's expansion imports (tests/frontends/"
           "test_onnx_import.py checks that against onnxruntime)",
    "Pow": "its cases take powers of the data other than GELU's x^3 (tests/frontends/test_onnx_import.py checks "
           "that form against onnxruntime)",
}


def test_selection_covers_the_claimed_data_path_ops() -> None:
    """Every claimed op has at least one case that runs and passes, or is listed in NO_PASSING_CASE."""
    passing = [name for name in CASE_NAMES if name not in REJECTED_CASES]
    covered = {node.op_type for name in passing for node in _selected_cases()[name][0].graph.node}
    assert set(SUPPORTED_OPS) - covered == set(NO_PASSING_CASE)
