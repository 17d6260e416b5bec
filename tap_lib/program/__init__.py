"""The TapStack Pulumi program: pure declaration, run by both engines and by the Pulumi CLI."""
from .tap_stack import TapStack, TapStackArgs
from .entry import define_stack, OUTPUT_NAMES

__all__ = ["TapStack", "TapStackArgs", "define_stack", "OUTPUT_NAMES"]
