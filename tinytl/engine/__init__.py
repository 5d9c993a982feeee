"""Memory-lean training engine: custom autograd Functions behind drop-in modules, one call to convert."""

from tinytl.engine.convert import (ENGINE_MODES, checkpoint_blocks, convert_model, is_converted,
                                   restore_model)
from tinytl.engine.functional import pack_mask, unpack_mask

__all__ = ["ENGINE_MODES", "checkpoint_blocks", "convert_model", "is_converted", "pack_mask",
           "restore_model", "unpack_mask"]
