"""Small modal screens: a yes/no question and the key help."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

KEYS = """\
[b]Keys[/b]

  ↑ ↓  j k     move
  Enter        details of the check
  Esc          back, or clear the filter
  /            filter by name, tag or status (e.g. [i]down backup[/i])
  s            change the sort: status, name, last ping, next due
  p  r         pause, resume
  n  e  d      new check, edit, delete
  ?            this help
  q            quit
"""


class Confirm(ModalScreen[bool]):
    """A question answered with y or n (Enter on a button works too)."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Grid {
        grid-size: 2; grid-gutter: 1 2; grid-rows: auto 3;
        padding: 1 2; width: 64; height: auto;
        border: thick $error; background: $surface;
    }
    Confirm #question { column-span: 2; width: 100%; }
    Confirm Button { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label(self.question, id="question", markup=False)
            yield Button("Delete (y)", variant="error", id="yes")
            yield Button("Keep (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Help(ModalScreen[None]):
    DEFAULT_CSS = """
    Help { align: center middle; }
    Help > Vertical {
        width: 72; height: auto; padding: 1 2;
        border: thick $primary; background: $surface;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "app.pop_screen", "close")
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(KEYS)
