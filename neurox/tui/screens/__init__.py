"""The TUI's screens."""
from .confirm import ConfirmScreen as ConfirmScreen
from .main import MainScreen as MainScreen
from .prompt import PromptScreen as PromptScreen
