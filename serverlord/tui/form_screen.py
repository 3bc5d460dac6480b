"""The new-check and edit form: validated as you type, with the next due times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from serverlord.tui.client import ClientError
from serverlord.tui.forms import FIELDS, check_form, form_values
from serverlord.tui.model import CheckRow

if TYPE_CHECKING:
    from serverlord.tui.app import ServerlordApp

LABELS = {
    "name": "Name",
    "tags": "Tags (space-separated)",
    "schedule": "Schedule: a period (5m, 1h30m), a cron line or OnCalendar",
    "tz": "Time zone of a cron or OnCalendar schedule",
    "grace": "Grace: how late a ping may be",
    "max_runtime": "Max run time after a start ping (empty: the grace)",
}


class CheckForm(ModalScreen[dict[str, Any] | None]):
    """Dismissed with the check as the server answered, or None if cancelled."""

    DEFAULT_CSS = """
    CheckForm { align: center middle; }
    CheckForm > VerticalScroll {
        width: 84; height: 90%; padding: 0 2;
        border: thick $primary; background: $surface;
    }
    CheckForm Label { margin-top: 1; }
    CheckForm Input.-invalid { border: tall $error; }
    CheckForm #problems { color: $error; margin-top: 1; }
    CheckForm #preview { color: $success; margin-top: 1; }
    CheckForm Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        Binding("ctrl+s", "save", "save"),
    ]

    def __init__(self, row: CheckRow | None) -> None:
        super().__init__()
        self.row = row

    @property
    def lord(self) -> ServerlordApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        values = form_values(None if self.row is None else self.row.data)
        with VerticalScroll():
            title = "New check" if self.row is None else f"Edit “{self.row.name}”"
            yield Static(Text(title, style="bold"))
            for name in FIELDS:
                yield Label(LABELS[name])
                yield Input(values[name], id=name)
            yield Static(id="problems")
            yield Static(id="preview")
            with Horizontal():
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self.validate()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#{name}", Input).value for name in FIELDS}

    def validate(self) -> bool:
        checked = check_form(self.values(), datetime.now(UTC))
        for name in FIELDS:
            self.query_one(f"#{name}", Input).set_class(
                name in checked.problems, "-invalid"
            )
        problems = "\n".join(f"{n}: {why}" for n, why in checked.problems.items())
        # The problems quote the input: plain text, never markup.
        self.query_one("#problems", Static).update(Text(problems))
        preview = ""
        if checked.due:
            # In the check's time zone, as the server reads its schedule, not
            # the time zone of this machine.
            zone = ZoneInfo(checked.zone)
            preview = f"Next due ({checked.zone} time): " + ", ".join(
                d.astimezone(zone).strftime("%a %d %b %H:%M:%S") for d in checked.due
            )
        self.query_one("#preview", Static).update(Text(preview))
        self.query_one("#save", Button).disabled = not checked.ok
        return checked.ok

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        if self.validate():
            self.save()

    @work(exclusive=True, group="form")
    async def save(self) -> None:
        checked = check_form(self.values(), datetime.now(UTC))
        fields = checked.fields
        client = self.lord.client
        try:
            if self.row is None:
                # As `serverlord check add`: a new check alerts every channel of
                # the project (the API's default is none). An edit keeps the
                # check's channels as they are.
                data = await client.create({**fields, "channels": "*"})
            else:
                data = await client.update(self.row.key, fields)
        except ClientError as exc:
            text = f"The server refused: {exc}"
            self.lord.report(text, "tui_save_refused")
            if self.is_current:
                self.query_one("#problems", Static).update(Text(text))
            return
        if self.is_current:  # else closed with Esc while the server answered
            self.dismiss(data)
