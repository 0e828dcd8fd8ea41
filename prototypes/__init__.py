"""The object model: prototype objects with slots, delegation and method slots."""
from .errors import DelegationCycle, DoesNotUnderstand, ExtensionFailed, SlotError
from .method import BoundMethod, Method
from .object import Message, UvmObject

__all__ = ["UvmObject", "Method", "BoundMethod", "Message",
           "DoesNotUnderstand", "DelegationCycle", "ExtensionFailed", "SlotError"]
