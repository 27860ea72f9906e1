"""Export: a pruned model as a file for another runtime, checked there.

* `registry`: `Exporter`, the registry of formats, and `export(model, path,
  format=...)`, the one entry point (writing goes through Keras'
  `model.export`);
* `verification`: `ExportResult`, and comparing a file's outputs with Keras;
* `litert`: the `"litert"` (TFLite) exporter, `export_tflite`, running files in
  the LiteRT interpreter (`TFLiteRunner`, `verify_tflite`);
* `saved_model`: the `"tf_saved_model"` exporter and `export_saved_model`;
* `timing`: `benchmark_tflite`, LiteRT latency with interleaved runs.
"""

from kprune.exporters.litert import TFLiteRunner, export_tflite, verify_tflite
from kprune.exporters.registry import (
    Exporter,
    export,
    formats,
    get_exporter,
    register_exporter,
)
from kprune.exporters.saved_model import export_saved_model
from kprune.exporters.timing import TFLiteBenchmark, benchmark_table, benchmark_tflite
from kprune.exporters.verification import ExportResult

__all__ = [
    "ExportResult",
    "Exporter",
    "TFLiteBenchmark",
    "TFLiteRunner",
    "benchmark_table",
    "benchmark_tflite",
    "export",
    "export_saved_model",
    "export_tflite",
    "formats",
    "get_exporter",
    "register_exporter",
    "verify_tflite",
]
