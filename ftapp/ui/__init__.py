"""The Gradio skin: one build_<tab>_tab(services) per tab. No SQL or model calls here; each
handler checks the caller's role, calls one core function, and formats the result."""
