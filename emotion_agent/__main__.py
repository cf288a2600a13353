"""``python -m emotion_agent`` runs the command line."""

from emotion_agent.cli import main

main()
