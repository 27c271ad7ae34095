"""``python -m zegclip.export``: ONNX / TorchScript export. A command name only; the program is
:mod:`zegclip.apps.export`."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("zegclip.apps.export", run_name="__main__", alter_sys=True)
