"""The analyst's web app: eval runs, turns with their evidence, "ask why", and live analysis.

Served by the HTTP service (``emotion-agent serve``) under ``/ui``; see :func:`app.create_web_app`.
"""
