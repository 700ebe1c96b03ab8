"""The Deploy tab (admins): what answers as "production" and since when, promoting a model and
rolling back with one click, the history, the app's OpenAI-compatible URL (ftapp/api.py) with
ready curl and Python calls and its API keys (ui/deploy_keys.py), and monitoring of the
production chat (requests, latency and thumbs up over time per model) with a flag when the
current model does worse than the previous one, the thumbs as a new preference dataset
version to train on; and exports (ui/deploy_export.py)."""

from __future__ import annotations

import html

import gradio as gr

from ftapp.deploy.feedback import RULE_NOTE, counts_text, feedback_counts, feedback_to_dataset
from ftapp.deploy.gate import GateResult, check_gate
from ftapp.deploy.monitoring import MonitoringRow, feedback_drop, monitoring_report
from ftapp.deploy.production import (
    Promotion,
    backend_endpoint,
    client_snippets,
    promote_to_production,
    promotion_history,
    roll_back_production,
)
from ftapp.deploy.traffic_drift import drift_text, production_drift
from ftapp.names import BASE, PRODUCTION
from ftapp.records import Role
from ftapp.services import Services
from ftapp.ui.common import (
    TabWiring,
    current_user,
    escape_markdown,
    fresh_choices_on_focus,
    guarded,
    notice,
    require,
)
from ftapp.ui.deploy_canary import build_canary_section
from ftapp.ui.deploy_export import build_export_section
from ftapp.ui.deploy_keys import build_keys_section

API_KEY_VARIABLE = "FTAPP_API_KEY"  # where the snippets read the key from

HISTORY_HEADERS = ["#", "when (UTC)", "action", "model", "by", "note", "gate overridden: why"]
MONITOR_HEADERS = ["time (UTC)", "model", "requests", "errors", "stopped", "p50 ms", "p95 ms",
                   "rated", "feedback rate", "thumbs up", "first token p50 ms",
                   "from"]  # fmt: skip


def build_deploy_tab(services: Services) -> TabWiring:
    drop_flag = gr.Markdown("", elem_id="ft-deploy-drop")
    current = gr.Markdown("", elem_id="ft-deploy-current")
    with gr.Row():
        model = gr.Dropdown(label="Model to promote", choices=[], value=None, scale=3,
                            allow_custom_value=True, elem_id="ft-deploy-model")  # fmt: skip
        note = gr.Textbox(label="Note (optional)", scale=3, elem_id="ft-deploy-note")
    # What the promotion gate says of the chosen model (drift, canary sets), before promoting.
    gate = gr.Markdown("", elem_id="ft-deploy-gate")
    override = gr.Textbox(label="Override reason (only when the gate objects; it is recorded)",
                          elem_id="ft-deploy-override")  # fmt: skip
    with gr.Row():
        promote_button = gr.Button("Promote to production", variant="primary",
                                   elem_id="ft-deploy-promote")  # fmt: skip
        rollback_button = gr.Button("Roll back", variant="stop", elem_id="ft-deploy-rollback")
        refresh = gr.Button("↻ Refresh", elem_id="ft-deploy-refresh")
    outcome = gr.Markdown("", elem_id="ft-deploy-outcome")
    gr.Markdown("### How clients call it")
    endpoint = gr.Markdown("", elem_id="ft-deploy-endpoint")
    with gr.Row():
        curl = gr.Code(label="curl", language="shell", interactive=False)
        python = gr.Code(label="Python (openai client)", language="python", interactive=False)
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False,
                           label="History, newest first", elem_id="ft-deploy-history")  # fmt: skip
    keys_loads = build_keys_section(services)
    canary_loads = build_canary_section(services)
    gr.Markdown("### Monitoring of production (the API's calls and the Playground's)")
    with gr.Row():
        bucket = gr.Radio(["hour", "day"], value="hour", label="Per", scale=1)
        by_key = gr.Checkbox(value=False, label="and per API key", scale=1,
                             elem_id="ft-deploy-by-key")  # fmt: skip
        since = gr.Textbox(label="Since (UTC, like 2024-05-01; empty: everything)", scale=2)
        monitor_button = gr.Button("↻ Refresh monitoring", scale=1)
    table = gr.Dataframe(headers=MONITOR_HEADERS, interactive=False, label="Per time and model",
                         elem_id="ft-deploy-monitor")  # fmt: skip
    plot = gr.Plot(label="Requests, latency and thumbs up over time")
    traffic = gr.Markdown("", elem_id="ft-deploy-traffic-drift")
    build_feedback_to_dataset_section(services, since)
    export_loads = build_export_section(services)

    @guarded(services, Role.ADMIN)
    def show(request: gr.Request, chosen: str | None):
        names = services.servable_models()
        with services.db() as db:
            promotions = promotion_history(db)
        info = backend_endpoint(services.backend, promotions[0] if promotions else None)
        api_url = _app_url(request) + "/v1"
        engine = f"`{info.url}`" if info.url else "none"
        # The note is ftapp's own text (with `code` in it), so it is not escaped.
        endpoint_text = (
            f"**OpenAI-compatible URL:** `{api_url}` · **model:** `{PRODUCTION}` · with an API "
            "key (below): every call is logged and counted in the monitoring.\n\n"
            f"The engine behind it: {engine} (model `{info.model}`), not logged. {info.note}"
        )
        curl, python = client_snippets(api_url, PRODUCTION, API_KEY_VARIABLE)
        return (
            gr.update(choices=names, value=chosen if chosen in names else None),
            _current_text(promotions[0] if promotions else None),
            [_history_row(p) for p in promotions],
            endpoint_text,
            curl,
            python,
        )

    @guarded(services, Role.ADMIN)
    def promote(request: gr.Request, chosen: str | None, why: str, reason: str):
        user = _user_name(services, request)
        promotion, served = promote_to_production(
            services.db, services.backend, services.served_base, chosen or "", user, why or "",
            override_reason=reason or "", max_drift=services.settings.max_drift,
        )  # fmt: skip
        notice(f"{promotion.model} is in production")
        overridden = " (the gate's objection overridden: recorded)" if (
            promotion.override_reason) else ""  # fmt: skip
        return (f"Promoted **{escape_markdown(promotion.model)}**{overridden}: "
                f"{_served_text(served)}.", "", "", *show(request, chosen))  # fmt: skip

    @guarded(services, Role.ADMIN)
    def show_gate(request: gr.Request, chosen: str | None) -> str:
        if not chosen or chosen == BASE:
            return ""
        with services.db() as db:
            result = check_gate(db, chosen, services.settings.max_drift)
        return _gate_text(result, services.settings.max_drift)

    @guarded(services, Role.ADMIN)
    def roll_back(request: gr.Request, chosen: str | None):
        promotion, served = roll_back_production(
            services.db, services.backend, services.served_base, _user_name(services, request)
        )
        notice(f"rolled back to {promotion.model}")
        return (f"Rolled back to **{escape_markdown(promotion.model)}**: "
                f"{_served_text(served)}.", *show(request, chosen))  # fmt: skip

    @guarded(services, Role.ADMIN)
    def monitor(request: gr.Request, per: str, from_when: str, split: bool):
        with services.db() as db:
            rows = monitoring_report(db, per or "hour", (from_when or "").strip() or None,
                                     by_key=bool(split))  # fmt: skip
            drop = feedback_drop(db)
            shifts = production_drift(db)
        flag = (f"## Warning: production does worse than before\n{escape_markdown(drop.text)}"
                if drop else "")  # fmt: skip
        return flag, [_monitor_row(r) for r in rows], _plot(rows), drift_text(shifts)

    shown = [model, current, history, endpoint, curl, python]
    monitored = [drop_flag, table, plot, traffic]
    refresh.click(show, [model], shown, api_name="deploy_status")
    fresh_choices_on_focus(services, model, services.servable_models, "deploy_models")
    promote_button.click(promote, [model, note, override], [outcome, note, override, *shown],
                         api_name="deploy_promote")  # fmt: skip
    model.change(show_gate, [model], [gate], api_name="deploy_gate")
    rollback_button.click(roll_back, [model], [outcome, *shown], api_name="deploy_rollback")
    watched = [bucket, since, by_key]
    monitor_button.click(monitor, watched, monitored, api_name="deploy_monitor")
    bucket.change(monitor, watched, monitored, api_name=False)
    by_key.change(monitor, watched, monitored, api_name=False)
    loads = ((show, [model], shown), (monitor, watched, monitored))
    return TabWiring(on_load=loads) + export_loads + keys_loads + canary_loads


def build_feedback_to_dataset_section(services: Services, since: gr.Textbox) -> None:
    """The rated production replies (from the monitoring's Since on) as a new preference
    dataset version, counted first."""
    gr.Markdown(f"### Train on the feedback\n{RULE_NOTE} Replies from the Since date above on.")
    with gr.Row():
        name = gr.Textbox(label="New dataset name", scale=3, elem_id="ft-deploy-feedback-name")
        count = gr.Button("Count rated replies", scale=1, elem_id="ft-deploy-feedback-count")
        create = gr.Button("Create preference version", variant="primary", scale=1,
                           elem_id="ft-deploy-feedback-create")  # fmt: skip
    result = gr.Markdown("", elem_id="ft-deploy-feedback-result")

    @guarded(services, Role.ADMIN)
    def count_feedback(request: gr.Request, from_when: str) -> str:
        with services.db() as db:
            counts = feedback_counts(db, since=from_when)
        rows = counts["thumbs up"] + counts["thumbs down"]
        return f"{escape_markdown(counts_text(counts))}: {rows} rows would be written."

    @guarded(services, Role.ADMIN)
    def to_dataset(request: gr.Request, from_when: str, dataset: str) -> str:
        with services.db() as db:
            version, found = feedback_to_dataset(
                db, require(dataset, "Name the new dataset first."), since=from_when,
                user=_user_name(services, request), count_tokens=services.count_tokens,
                max_tokens=services.settings.max_tokens,
            )  # fmt: skip
        good = sum(1 for r in found.replies if r.is_good)
        return (f"Froze **{escape_markdown(version.label)}**: {good} replies labelled good, "
                f"{len(found.replies) - good} bad ({version.n_train} train, "
                f"{version.n_validation} validation, {version.n_test} test). Train it (KTO) "
                "from the Train tab.")  # fmt: skip

    count.click(count_feedback, [since], [result], api_name="count_feedback")
    create.click(to_dataset, [since, name], [result], api_name="feedback_to_dataset")


def _app_url(request: gr.Request) -> str:
    """This app's address as the browser reached it (behind a proxy, its public one)."""
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or "127.0.0.1"
    scheme = request.headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}"


def _user_name(services: Services, request: gr.Request) -> str:
    return current_user(services, request).name


def _served_text(served: str) -> str:
    """Where production is served: ftapp's own line, with the server's URL in it. Markdown
    escapes would show inside the link as backslashes (http://127\\.0\\.0\\.1), so only
    HTML is escaped."""
    return html.escape(served, quote=False)


def _current_text(promotion: Promotion | None) -> str:
    if promotion is None:
        return (f"**In production:** nothing yet. Promote a model: clients then call it as "
                f"`{PRODUCTION}`.")  # fmt: skip
    how = "rollback" if promotion.is_rollback else "promotion"
    when = promotion.created_at[:19].replace("T", " ")
    who = escape_markdown(promotion.created_by)
    return (f"**In production:** `{html.escape(promotion.model)}` since {when} UTC ({how} by "
            f"{who}). Clients call it as `{PRODUCTION}`.")  # fmt: skip


def _history_row(p: Promotion) -> list:
    action = "rollback" if p.is_rollback else "promote"
    return [p.id, p.created_at[:19].replace("T", " "), action, p.model, p.created_by, p.note,
            p.override_reason or ""]  # fmt: skip


def _gate_text(result: GateResult, max_drift: float) -> str:
    """The gate's view of a model, in a few lines: drift against the limit, each canary set."""
    name = escape_markdown(result.model)
    if result.drift:
        d = result.drift
        drift = (f"drift {d['mean']:.3f} nats per token (95% interval {d['low']:.3f} to "
                 f"{d['high']:.3f}; the limit is {max_drift:g})")  # fmt: skip
    else:
        drift = "drift not measured yet"
    canaries = [f"{escape_markdown(c['canary'])}: " + ("worse on " + "; ".join(
        escape_markdown(w) for w in c["worse"]) if c["worse"] else c["status"])
        for c in result.canaries]  # fmt: skip
    lines = [f"**Gate for {name}:** {drift}" + (
        f"; canary sets: {', '.join(canaries)}" if canaries else "; no canary set")]  # fmt: skip
    if result.passes:
        lines.append("It may be promoted.")
    else:
        lines.append(
            "**Promoting it needs an override reason**, because "
            + "; and ".join(escape_markdown(o) for o in result.objections)
            + "."
        )
    return "\n\n".join(lines)


def _monitor_row(r: MonitoringRow) -> list:
    return [r.bucket.replace("T", " "), r.model, r.requests, r.errors, r.stopped,
            _round(r.latency_p50_ms), _round(r.latency_p95_ms), r.rated,
            _percent(r.feedback_rate), _percent(r.thumbs_up_rate), _round(r.ttft_p50_ms),
            r.source]  # fmt: skip


def _plot(rows: list[MonitoringRow]):
    """Three panels over time, one line per model: requests, median latency, thumbs-up rate."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6.5), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    if not rows:
        axes[0].text(0.5, 0.5, "No production requests yet", ha="center", va="center")
        for ax in axes:
            ax.set_axis_off()
        return figure
    buckets = sorted({r.bucket for r in rows})
    position = {b: i for i, b in enumerate(buckets)}
    for model in sorted({r.model for r in rows}):
        mine = [r for r in rows if r.model == model]
        x = [position[r.bucket] for r in mine]
        axes[0].plot(x, [r.requests for r in mine], marker="o", label=model)
        axes[1].plot(x, [_nan(r.latency_p50_ms) for r in mine], marker="o", label=model)
        axes[2].plot(x, [_nan(r.thumbs_up_rate) for r in mine], marker="o", label=model)
    axes[0].set_ylabel("requests")
    axes[1].set_ylabel("median latency (ms)")
    axes[2].set_ylabel("thumbs-up rate")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_xticks(range(len(buckets)), [b.replace("T", " ") for b in buckets],
                       rotation=30, ha="right")  # fmt: skip
    axes[0].legend(loc="upper left", fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
