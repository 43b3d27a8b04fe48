"""vitcka: write vit-cka activation stores from any PyTorch model, on any device, for the `cka` command.

```python
import vitcka
vitcka.extract(model, loader, "model.h5", layers="blocks.*", gram_batch_size=256, model_name="my-vit")
# then: cka compare model.h5 other.h5 --layers 'blocks.*' --batch-size 256 --heatmap model_vs_other.png
```
"""
__version__ = "0.1.0"

from .store import (DuplicateIdError, IdOrderError, NonFiniteError, StoreError, StoreWriter,  # noqa: E402
                    centered_gram)
from .extract import ExtractionSummary, extract, hookable_layers  # noqa: E402

__all__ = ["extract", "hookable_layers", "ExtractionSummary", "StoreWriter", "StoreError", "DuplicateIdError",
           "IdOrderError", "NonFiniteError", "centered_gram", "__version__"]
