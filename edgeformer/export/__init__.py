"""Export: torch (zoo name or your ``nn.Module``) to a deployable artifact, one format per entry of :data:`FORMATS`.

One table drives dispatch and validation (ultralytics' lesson): a target adds a row naming its function
(imported lazily, so ``import edgeformer`` never imports torch or a vendor SDK), its file suffix and
whether it starts from a torch module. Every exporter takes the same keyword arguments and returns the
:class:`~edgeformer.artifact.Artifact` it wrote.

Example::

    import edgeformer
    art = edgeformer.export("efficientformer_l1", out="build/l1")            # parity-checked ONNX
    art = edgeformer.export(my_module, out="build/mine", example_inputs=(torch.randn(1, 3, 224, 224),))
"""

# light on purpose: compile targets import export.parity/export.coreml without torch; the torch side is
# edgeformer.export.source (prepare_source), imported by the exporters that need it
from .formats import FORMATS, ExportFormat, build_config, export, get_format

__all__ = ["FORMATS", "ExportFormat", "build_config", "export", "get_format"]

from ..callable_package import make_callable

make_callable(__name__, export)
