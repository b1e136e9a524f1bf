"""The platform-free bot: session state machine, commands, texts and event delivery."""
