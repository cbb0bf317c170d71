"""What stacks.local, bench and analysis share: the user-error base (errors), the status
lines of steps (status), and waiting and trying again (polling). Standard library only."""
