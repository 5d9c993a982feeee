"""The app's pages: one file each under explorer/pages/. Add a page with one line here."""

from __future__ import annotations

from typing import NamedTuple


class PageEntry(NamedTuple):
    """A page file, its title in the sidebar, and its icon."""

    path: str
    title: str
    icon: str


PAGES: list[PageEntry] = [  # the first one is the default page (served at "/")
    PageEntry("explorer/pages/memory.py", "Memory", ":material/memory:"),
    PageEntry("explorer/pages/compare.py", "Compare policies", ":material/bar_chart:"),
    PageEntry("explorer/pages/why_bias.py", "Why bias-only saves memory", ":material/school:"),
    PageEntry("explorer/pages/finetune.py", "Fine-tune", ":material/model_training:"),
    PageEntry("explorer/pages/runs.py", "Runs", ":material/table_chart:"),
    PageEntry("explorer/pages/pareto.py", "Pareto", ":material/scatter_plot:"),
]
