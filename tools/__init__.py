"""Tools a model may call while it reasons: a Python sandbox (``tools.sandbox``) behind the small ``Tool`` protocol.

A remote sandbox service plugs in by implementing ``Tool.run(code) -> ToolResult`` (see ``tools/sandbox.py``).
"""

from tools.sandbox import Limits, PythonSandbox, Tool, ToolResult

__all__ = ["Limits", "PythonSandbox", "Tool", "ToolResult"]
