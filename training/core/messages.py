"""Text the server writes, in the reader's language: one catalogue, three languages.

The interface's fixed labels are ``gr.I18n`` keys the browser translates (``studio.i18n``). What
the server computes (reports, states, log lines, table headers, chart axes) is said here:
``say("library.state.cancelled")`` or ``say("report.ready", examples=40)``, in the current
``LANGUAGE`` (English unless set). The studio sets it for every event from the page's
``studio-lang`` cookie (``studio.errors.user_errors``). Job log lines are stored as a key and its
values, and said in the language of whoever reads them.
"""

from __future__ import annotations

from contextvars import ContextVar

LANGUAGES = ("en", "zh-CN", "fr")
LANGUAGE: ContextVar[str] = ContextVar("studio_language", default="en")
"""The language of the page whose event is being handled."""

COOKIE = "studio-lang"


def language_of(request) -> str:
    """``en``, ``zh-CN`` or ``fr`` for a Gradio or Starlette request: its ``studio-lang``
    cookie, else its Accept-Language header, else English."""
    if request is None:
        return "en"
    cookies = getattr(request, "cookies", None) or {}
    headers = getattr(request, "headers", None) or {}
    for wanted in (cookies.get(COOKIE, ""), headers.get("accept-language", "")):
        code = wanted.strip().lower()
        if code.startswith("zh"):
            return "zh-CN"
        if code.startswith("fr"):
            return "fr"
        if code.startswith("en"):
            return "en"
    return "en"


def say(key: str, **params) -> str:
    """The message ``key`` in the current page's language, with ``params`` filled in."""
    return CATALOGUE[LANGUAGE.get()][key].format(**params)


EN = {
    # job log (stored as a key and its values; said in the reader's language)
    "log.training": "Training {examples} examples on {device} ({precision}): {per_epoch} steps per epoch, {total} steps in all.",
    "log.resumed_from": "Resumed from epoch {epoch} checkpoint (step {step}).",
    "log.stopped_early": "Stopped early at step {step}: eval token accuracy has not improved for {evals} evaluations (best {best:.4f}).",
    "log.eval": "Evaluation at step {step} (epoch {epoch:.2f}): eval loss {loss:.4f}, token accuracy {accuracy:.1%}.",
    "log.epoch": "Epoch {epoch} of {epochs} done at step {step}: mean loss {loss:.4f}, {seconds:.1f} s of training.",
    "log.checkpoint": "Checkpoint saved: epoch {epoch} (step {step}); the job resumes from here if it stops.",
    "log.finished": "Finished at step {step}: the tuned model is ready.",
    "log.interrupted": "The studio stopped at step {step}; this job resumes from its last checkpoint when the studio starts again.",
    "log.failed": "Failed: {message}",
    "log.cancelled_partial": "Cancelled. The epoch {epoch} checkpoint (step {step}) is kept as a partial model: it may behave unpredictably. Tune again with fewer epochs for a finished model.",
    "log.cancelled_partial_at": "Cancelled at step {at}. The epoch {epoch} checkpoint (step {step}) is kept as a partial model: it may behave unpredictably. Tune again with fewer epochs for a finished model.",
    "log.cancelled_empty": "Cancelled, before the first checkpoint: no model was kept. If training took too long, tune again with fewer epochs.",
    "log.cancelled_empty_at": "Cancelled at step {at}, before the first checkpoint: no model was kept. If training took too long, tune again with fewer epochs.",
    "log.resumed_checkpoint": "Resumed from the epoch {epoch} checkpoint (step {step}).",
    "log.resumed_start": "Resumed from the start (no checkpoint had been written).",
    "log.restarted_checkpoint": "The studio stopped while this job was running; resuming from the epoch {epoch} checkpoint (step {step}).",
    "log.restarted_start": "The studio stopped while this job was running; resuming from the start (no checkpoint had been written).",
    # My Library
    "library.col.name": "name", "library.col.id": "id", "library.col.base_model": "base model",
    "library.col.state": "state", "library.col.progress": "progress", "library.col.created": "created",
    "library.col.dataset": "dataset", "library.col.epochs": "epochs", "library.col.final_loss": "final loss",
    "library.col.latest": "latest version", "library.col.examples": "examples",
    "library.col.format": "format", "library.col.updated": "updated",
    "library.state.queued": "CREATING (queued)",
    "library.state.running": "CREATING (running)",
    "library.state.cancelling": "CREATING (cancelling)",
    "library.state.interrupted": "CREATING (interrupted)",
    "library.state.succeeded": "ACTIVE (succeeded)",
    "library.state.failed": "FAILED (failed)",
    "library.state.cancelled": "Cancelled",
    "library.partial": "{state}, partial model",
    "library.queued_at": "queued (#{position})",
    "library.queued": "queued",
    "library.starting": "starting…",
    "library.left": "{percent}% · {left} left",
    "library.step": "step {done}/{total}",
    "library.final_loss": "final loss {loss}",
    "library.error": "Error",
    "library.partial_note": "This model was cancelled before the end: it is the last checkpoint, a partial model. Use *Tune again* with fewer epochs for a finished one.",
    "library.dataset_line": "**Dataset:** {name} version {version} ({examples} examples) · **Base model:** {model}",
    "library.epoch_table": "| epoch | step | mean loss | compute time |",
    "library.settings_table": "| setting | value |",
    "library.delete_question": "Delete **{name}** (`{id}`), its model, checkpoints and log? This cannot be undone.",
    # the loss chart
    "chart.step": "step", "chart.loss": "loss", "chart.accuracy": "token accuracy",
    "chart.training_loss": "training loss", "chart.epoch_loss": "epoch mean loss",
    "chart.eval_loss": "eval loss", "chart.eval_accuracy": "eval token accuracy",
    "chart.epoch": "epoch {epoch}", "chart.waiting": "Waiting for the first training step…",
    # the Datasets tab
    "count.row_one": "{n:,} row", "count.row_many": "{n:,} rows",
    "count.line_one": "{n:,} line", "count.line_many": "{n:,} lines",
    "count.item_one": "{n:,} item", "count.item_many": "{n:,} items",
    "count.column_one": "{n:,} column", "count.column_many": "{n:,} columns",
    "count.example_one": "{n:,} example", "count.example_many": "{n:,} examples",
    "import.sheet": " (sheet '{sheet}')",
    "import.pasted": "Pasted rows",
    "report.ready": "Ready: {examples} examples, no errors",
    "report.not_ready": "Not ready: {examples} examples, {errors} error(s)",
    "report.warnings": ", {warnings} warning(s)",
    "report.truncated": "Will be truncated in training: rows {rows}",
    "report.tokens": "Tokens per example: input up to {input_max:,} (mean {input_mean:,.0f}), output up to {output_max:,} (mean {output_mean:,.0f}).",
    "report.more": "…and {more} more (export or fix these first).",
    "data.detected": "Detected",
    "preview.tokens_pending": "Token counts appear once the base model's tokenizer is ready.",
    "preview.tokens": "Row {row}: input {input:,} tokens · output {output:,} tokens",
    "preview.highlighted": "highlighted", "preview.legend": "what the model learns to write",
    "preview.empty": "Add an example to see how the model will see it.",
    "preview.no_rows": "No rows to preview.", "preview.no_label": "(no label)",
    "data.saved": "Saved **{name}** version {version} ({examples} examples).",
    "data.unchanged": "Nothing to save: **{name}** version {version} already holds these examples and this prompt.",
    "data.saved_with_errors": " It has {errors} error(s): fix them and save again before tuning with it.",
    # New tuned model
    "range.whole_between": "a whole number from {low} to {high}",
    "range.whole_from": "a whole number of at least {low}", "range.whole": "a whole number",
    "range.number_between": "a number from {low} to {high}",
    "range.number_from": "a number of at least {low}", "range.number": "a number",
    "new.started": "Started **{name}** (`{id}`): follow it in My Library.",
    "new.cannot": "Cannot do that",
}
ZH = {
    "log.training": "在 {device}（{precision}）上训练 {examples} 个示例：每轮 {per_epoch} 步，共 {total} 步。",
    "log.resumed_from": "已从第 {epoch} 轮检查点（第 {step} 步）恢复。",
    "log.stopped_early": "在第 {step} 步提前停止：评估词元准确率已连续 {evals} 次评估没有提高（最佳 {best:.4f}）。",
    "log.eval": "第 {step} 步评估（第 {epoch:.2f} 轮）：评估损失 {loss:.4f}，词元准确率 {accuracy:.1%}。",
    "log.epoch": "第 {epoch} 轮（共 {epochs} 轮）于第 {step} 步完成：平均损失 {loss:.4f}，训练用时 {seconds:.1f} 秒。",
    "log.checkpoint": "已保存检查点：第 {epoch} 轮（第 {step} 步）；任务中断后将从这里继续。",
    "log.finished": "在第 {step} 步完成：调优模型已就绪。",
    "log.interrupted": "工作室在第 {step} 步停止；重新启动工作室后，此任务将从最后一个检查点继续。",
    "log.failed": "失败：{message}",
    "log.cancelled_partial": "已取消。第 {epoch} 轮检查点（第 {step} 步）保留为部分模型：其行为可能不可预测。如需完整模型，请减少轮数后再次调优。",
    "log.cancelled_partial_at": "已在第 {at} 步取消。第 {epoch} 轮检查点（第 {step} 步）保留为部分模型：其行为可能不可预测。如需完整模型，请减少轮数后再次调优。",
    "log.cancelled_empty": "已在第一个检查点之前取消：没有保留模型。如果训练时间太长，请减少轮数后再次调优。",
    "log.cancelled_empty_at": "已在第 {at} 步取消，早于第一个检查点：没有保留模型。如果训练时间太长，请减少轮数后再次调优。",
    "log.resumed_checkpoint": "已从第 {epoch} 轮检查点（第 {step} 步）继续。",
    "log.resumed_start": "已从头开始继续（尚未写入检查点）。",
    "log.restarted_checkpoint": "此任务运行时工作室停止了；正在从第 {epoch} 轮检查点（第 {step} 步）继续。",
    "log.restarted_start": "此任务运行时工作室停止了；正在从头开始继续（尚未写入检查点）。",
    "library.col.name": "名称", "library.col.id": "ID", "library.col.base_model": "基础模型",
    "library.col.state": "状态", "library.col.progress": "进度", "library.col.created": "创建时间",
    "library.col.dataset": "数据集", "library.col.epochs": "轮数", "library.col.final_loss": "最终损失",
    "library.col.latest": "最新版本", "library.col.examples": "示例数",
    "library.col.format": "格式", "library.col.updated": "更新时间",
    "library.state.queued": "创建中（排队）",
    "library.state.running": "创建中（训练中）",
    "library.state.cancelling": "创建中（正在取消）",
    "library.state.interrupted": "创建中（已中断）",
    "library.state.succeeded": "可用（已完成）",
    "library.state.failed": "失败",
    "library.state.cancelled": "已取消",
    "library.partial": "{state}，部分模型",
    "library.queued_at": "排队中（第 {position} 位）",
    "library.queued": "排队中",
    "library.starting": "正在启动…",
    "library.left": "{percent}% · 剩余 {left}",
    "library.step": "第 {done}/{total} 步",
    "library.final_loss": "最终损失 {loss}",
    "library.error": "错误",
    "library.partial_note": "此模型在结束前被取消：它是最后一个检查点，即部分模型。请用*再次调优*并减少轮数以得到完整模型。",
    "library.dataset_line": "**数据集：**{name} 第 {version} 版（{examples} 个示例） · **基础模型：**{model}",
    "library.epoch_table": "| 轮 | 步 | 平均损失 | 计算时间 |",
    "library.settings_table": "| 设置 | 值 |",
    "library.delete_question": "删除 **{name}**（`{id}`）及其模型、检查点和日志？此操作无法撤销。",
    "chart.step": "步", "chart.loss": "损失", "chart.accuracy": "词元准确率",
    "chart.training_loss": "训练损失", "chart.epoch_loss": "每轮平均损失",
    "chart.eval_loss": "评估损失", "chart.eval_accuracy": "评估词元准确率",
    "chart.epoch": "第 {epoch} 轮", "chart.waiting": "等待第一个训练步骤…",
    "count.row_one": "{n:,} 行", "count.row_many": "{n:,} 行",
    "count.line_one": "{n:,} 行", "count.line_many": "{n:,} 行",
    "count.item_one": "{n:,} 项", "count.item_many": "{n:,} 项",
    "count.column_one": "{n:,} 列", "count.column_many": "{n:,} 列",
    "count.example_one": "{n:,} 个示例", "count.example_many": "{n:,} 个示例",
    "import.sheet": "（工作表“{sheet}”）",
    "import.pasted": "粘贴的行",
    "report.ready": "就绪：{examples} 个示例，没有错误",
    "report.not_ready": "未就绪：{examples} 个示例，{errors} 个错误",
    "report.warnings": "，{warnings} 个警告",
    "report.truncated": "训练时将被截断的行：{rows}",
    "report.tokens": "每个示例的词元数：输入最多 {input_max:,}（平均 {input_mean:,.0f}），输出最多 {output_max:,}（平均 {output_mean:,.0f}）。",
    "report.more": "…还有 {more} 个（请先导出或修正这些）。",
    "data.detected": "检测结果",
    "preview.tokens_pending": "基础模型的分词器就绪后将显示词元数。",
    "preview.tokens": "第 {row} 行：输入 {input:,} 个词元 · 输出 {output:,} 个词元",
    "preview.highlighted": "高亮部分", "preview.legend": "模型学习写出的内容",
    "preview.empty": "添加一个示例，即可看到模型看到的内容。",
    "preview.no_rows": "没有可预览的行。", "preview.no_label": "（无标签）",
    "data.saved": "已保存 **{name}** 第 {version} 版（{examples} 个示例）。",
    "data.unchanged": "无需保存：**{name}** 第 {version} 版已包含这些示例和这个提示。",
    "data.saved_with_errors": " 它有 {errors} 个错误：请修正后再保存，然后再用它调优。",
    "range.whole_between": "{low} 到 {high} 之间的整数",
    "range.whole_from": "不小于 {low} 的整数", "range.whole": "整数",
    "range.number_between": "{low} 到 {high} 之间的数",
    "range.number_from": "不小于 {low} 的数", "range.number": "数",
    "new.started": "已开始 **{name}**（`{id}`）：请在“我的资源库”中查看。",
    "new.cannot": "无法执行",
}
FR = {
    "log.training": "Entraînement de {examples} exemples sur {device} ({precision}) : {per_epoch} étapes par époque, {total} étapes en tout.",
    "log.resumed_from": "Reprise depuis le point de contrôle de l'époque {epoch} (étape {step}).",
    "log.stopped_early": "Arrêt anticipé à l'étape {step} : la précision par jeton d'évaluation ne s'est pas améliorée depuis {evals} évaluations (meilleure {best:.4f}).",
    "log.eval": "Évaluation à l'étape {step} (époque {epoch:.2f}) : perte d'évaluation {loss:.4f}, précision par jeton {accuracy:.1%}.",
    "log.epoch": "Époque {epoch} sur {epochs} terminée à l'étape {step} : perte moyenne {loss:.4f}, {seconds:.1f} s d'entraînement.",
    "log.checkpoint": "Point de contrôle enregistré : époque {epoch} (étape {step}) ; la tâche reprend d'ici si elle s'arrête.",
    "log.finished": "Terminé à l'étape {step} : le modèle affiné est prêt.",
    "log.interrupted": "Le studio s'est arrêté à l'étape {step} ; cette tâche reprendra depuis son dernier point de contrôle au prochain démarrage du studio.",
    "log.failed": "Échec : {message}",
    "log.cancelled_partial": "Annulé. Le point de contrôle de l'époque {epoch} (étape {step}) est conservé comme modèle partiel : son comportement peut être imprévisible. Affinez à nouveau avec moins d'époques pour un modèle terminé.",
    "log.cancelled_partial_at": "Annulé à l'étape {at}. Le point de contrôle de l'époque {epoch} (étape {step}) est conservé comme modèle partiel : son comportement peut être imprévisible. Affinez à nouveau avec moins d'époques pour un modèle terminé.",
    "log.cancelled_empty": "Annulé avant le premier point de contrôle : aucun modèle n'a été conservé. Si l'entraînement était trop long, affinez à nouveau avec moins d'époques.",
    "log.cancelled_empty_at": "Annulé à l'étape {at}, avant le premier point de contrôle : aucun modèle n'a été conservé. Si l'entraînement était trop long, affinez à nouveau avec moins d'époques.",
    "log.resumed_checkpoint": "Reprise depuis le point de contrôle de l'époque {epoch} (étape {step}).",
    "log.resumed_start": "Reprise depuis le début (aucun point de contrôle n'avait été écrit).",
    "log.restarted_checkpoint": "Le studio s'est arrêté pendant cette tâche ; reprise depuis le point de contrôle de l'époque {epoch} (étape {step}).",
    "log.restarted_start": "Le studio s'est arrêté pendant cette tâche ; reprise depuis le début (aucun point de contrôle n'avait été écrit).",
    "library.col.name": "nom", "library.col.id": "identifiant", "library.col.base_model": "modèle de base",
    "library.col.state": "état", "library.col.progress": "progression", "library.col.created": "créé le",
    "library.col.dataset": "jeu de données", "library.col.epochs": "époques", "library.col.final_loss": "perte finale",
    "library.col.latest": "dernière version", "library.col.examples": "exemples",
    "library.col.format": "format", "library.col.updated": "mis à jour",
    "library.state.queued": "CRÉATION (en file d'attente)",
    "library.state.running": "CRÉATION (entraînement)",
    "library.state.cancelling": "CRÉATION (annulation)",
    "library.state.interrupted": "CRÉATION (interrompu)",
    "library.state.succeeded": "ACTIF (terminé)",
    "library.state.failed": "ÉCHEC",
    "library.state.cancelled": "Annulé",
    "library.partial": "{state}, modèle partiel",
    "library.queued_at": "en file d'attente (n° {position})",
    "library.queued": "en file d'attente",
    "library.starting": "démarrage…",
    "library.left": "{percent} % · encore {left}",
    "library.step": "étape {done}/{total}",
    "library.final_loss": "perte finale {loss}",
    "library.error": "Erreur",
    "library.partial_note": "Ce modèle a été annulé avant la fin : c'est le dernier point de contrôle, un modèle partiel. Utilisez *Affiner à nouveau* avec moins d'époques pour un modèle terminé.",
    "library.dataset_line": "**Jeu de données :** {name} version {version} ({examples} exemples) · **Modèle de base :** {model}",
    "library.epoch_table": "| époque | étape | perte moyenne | temps de calcul |",
    "library.settings_table": "| réglage | valeur |",
    "library.delete_question": "Supprimer **{name}** (`{id}`), son modèle, ses points de contrôle et son journal ? C'est définitif.",
    "chart.step": "étape", "chart.loss": "perte", "chart.accuracy": "précision par jeton",
    "chart.training_loss": "perte d'entraînement", "chart.epoch_loss": "perte moyenne par époque",
    "chart.eval_loss": "perte d'évaluation", "chart.eval_accuracy": "précision par jeton (évaluation)",
    "chart.epoch": "époque {epoch}", "chart.waiting": "En attente de la première étape d'entraînement…",
    "count.row_one": "{n:,} ligne", "count.row_many": "{n:,} lignes",
    "count.line_one": "{n:,} ligne", "count.line_many": "{n:,} lignes",
    "count.item_one": "{n:,} élément", "count.item_many": "{n:,} éléments",
    "count.column_one": "{n:,} colonne", "count.column_many": "{n:,} colonnes",
    "count.example_one": "{n:,} exemple", "count.example_many": "{n:,} exemples",
    "import.sheet": " (feuille « {sheet} »)",
    "import.pasted": "Lignes collées",
    "report.ready": "Prêt : {examples} exemples, aucune erreur",
    "report.not_ready": "Pas prêt : {examples} exemples, {errors} erreur(s)",
    "report.warnings": ", {warnings} avertissement(s)",
    "report.truncated": "Seront tronquées à l'entraînement : lignes {rows}",
    "report.tokens": "Jetons par exemple : entrée jusqu'à {input_max:,} (moyenne {input_mean:,.0f}), sortie jusqu'à {output_max:,} (moyenne {output_mean:,.0f}).",
    "report.more": "…et {more} de plus (exportez ou corrigez d'abord celles-ci).",
    "data.detected": "Détecté",
    "preview.tokens_pending": "Le nombre de jetons s'affiche dès que le tokenizer du modèle de base est prêt.",
    "preview.tokens": "Ligne {row} : entrée {input:,} jetons · sortie {output:,} jetons",
    "preview.highlighted": "surligné", "preview.legend": "ce que le modèle apprend à écrire",
    "preview.empty": "Ajoutez un exemple pour voir ce que le modèle verra.",
    "preview.no_rows": "Aucune ligne à prévisualiser.", "preview.no_label": "(sans libellé)",
    "data.saved": "**{name}** enregistré, version {version} ({examples} exemples).",
    "data.unchanged": "Rien à enregistrer : **{name}** version {version} contient déjà ces exemples et ce prompt.",
    "data.saved_with_errors": " Il contient {errors} erreur(s) : corrigez-les et enregistrez à nouveau avant de l'utiliser pour affiner.",
    "range.whole_between": "un nombre entier de {low} à {high}",
    "range.whole_from": "un nombre entier d'au moins {low}", "range.whole": "un nombre entier",
    "range.number_between": "un nombre de {low} à {high}",
    "range.number_from": "un nombre d'au moins {low}", "range.number": "un nombre",
    "new.started": "**{name}** (`{id}`) a démarré : suivez-le dans Ma bibliothèque.",
    "new.cannot": "Action impossible",
}
CATALOGUE = {"en": EN, "zh-CN": ZH, "fr": FR}


def english(key: str, **params) -> str:
    """The message in English whatever the current language (logs kept for every reader)."""
    return EN[key].format(**params)
