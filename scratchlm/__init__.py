"""scratchlm: train, sample and evaluate character-level GPT models with an engine written from scratch.

The autograd (``scratchlm.tensor``, ``scratchlm.function``, ``scratchlm.ops``), the layers
(``scratchlm.nn``), the model (``scratchlm.model``) and the optimizer (``scratchlm.optim``)
run on NumPy or CuPy arrays; the hot loops live in ``scratchlm.kernels``. Importing this
package is cheap: it loads NumPy and the autograd, never Numba or CuPy.
"""

__version__ = "0.1.0"

from .function import no_grad  # noqa: E402
from .tensor import Tensor  # noqa: E402

__all__ = ["Tensor", "no_grad", "__version__"]
