"""The dashboard: server-rendered pages (Jinja2) with Plotly charts, served by the API."""
