"""The labeling app and its label store.

- `ui.service.LabelService`: the store's one API (users, campaigns, assignment, judgments,
  quality statistics, export), used by the app, the CLI and simulated annotators.
- `ui.app`: the Gradio app (`build_app`, `mount`); `ui.auth`: sign-in and sessions.
- `ui.commands`: `rlhf label ...`. See docs/labeling.md.

No module here imports training code (torch, transformers): candidates arrive as rows.
"""
