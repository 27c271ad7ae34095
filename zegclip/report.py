"""``python -m zegclip.report``: the sweep report. A command name only; the program is
:mod:`zegclip.apps.sweep_report`."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("zegclip.apps.sweep_report", run_name="__main__", alter_sys=True)
