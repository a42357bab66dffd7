"""Ctrl-C at a chosen point of a real process: when the module named by INTERRUPT_AT_IMPORT is first
imported, the process sends itself SIGINT. Written as a sitecustomize.py into a directory put first on
the process's PYTHONPATH (no timing involved)."""

INTERRUPT_HOOK = """
import os, signal, sys
class _CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("INTERRUPT_AT_IMPORT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, _CtrlC())
"""
