"""Converting one graph to one file: LiteRT (``litert_torch``; fp32, dynamic int8 per-channel weights, or fp16
weights) and ONNX (``torch.onnx.export(dynamo=True)``; int8 by onnxruntime's dynamic MatMul quantisation).

Every file is written under a temporary name (``.<name>.tmp``) and renamed when complete, so a file with the final
name is always whole. A converter failure is an ``ExportError`` naming the graph and the module it wraps.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from arc.errors import UserError

PRECISIONS = {"litert": ("fp32", "int8", "fp16"), "onnx": ("fp32", "int8")}


class ExportError(UserError, RuntimeError):
    """A graph could not be converted, or its converted file does not match PyTorch; the message says which."""


@contextlib.contextmanager
def _replaced_when_done(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _describe_failure(name: str, module: nn.Module, err: Exception) -> ExportError:
    inner = next((m for m in module.children()), module)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ExportError(
        f"converting graph {name!r} ({type(module).__name__} around {type(inner).__module__}.{type(inner).__name__}) "
        f"failed: {type(err).__name__}: {first}"
    )


def to_litert(name: str, module: nn.Module, inputs: dict[str, torch.Tensor], path: Path, precision: str) -> Path:
    """``module`` traced on ``inputs`` (keyword arguments, so the signature is named) as a ``.tflite`` file."""
    import litert_torch
    from litert_torch.generative.quantize import quant_recipes

    recipes = {"fp32": None, "int8": quant_recipes.full_dynamic_recipe, "fp16": quant_recipes.full_fp16_recipe}
    recipe = recipes[precision]
    try:
        edge = litert_torch.convert(module, sample_kwargs=inputs, quant_config=None if recipe is None else recipe())
    except Exception as err:  # noqa: BLE001 - the converter raises many types; each becomes one clear message
        raise _describe_failure(name, module, err) from err
    with _replaced_when_done(path) as tmp:
        edge.export(str(tmp))
    return path


def to_onnx(
    name: str, module: nn.Module, inputs: dict[str, torch.Tensor], path: Path, output_names: list[str]
) -> Path:
    """``module`` as an fp32 ONNX file (static shapes, named inputs and outputs)."""
    try:
        program = torch.onnx.export(
            module, (), kwargs=inputs, dynamo=True, input_names=list(inputs), output_names=output_names,
            optimize=True, verbose=False,
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001
        raise _describe_failure(name, module, err) from err
    with _replaced_when_done(path) as tmp:
        program.save(str(tmp), external_data=False)
    return path


def onnx_int8(source: Path, path: Path) -> Path:
    """onnxruntime's dynamic int8 quantisation of the MatMul weights (per channel) of an fp32 ONNX file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _replaced_when_done(path) as tmp:
        quantize_dynamic(str(source), str(tmp), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8)  # fmt: skip
    return path
