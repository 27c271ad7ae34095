"""``python -m zegclip.demo``: the browser demo. A command name only; the program is
:mod:`zegclip.apps.demo`."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("zegclip.apps.demo", run_name="__main__", alter_sys=True)
