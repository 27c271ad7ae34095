"""Programs users run: ``predict.py``'s work, the browser demo, export, the sweep report's command.
Nothing imports them; what two of them share lives in a layer below."""
