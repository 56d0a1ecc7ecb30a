"""Workspaces (docs/workspaces.md): a git worktree per agent (worktrees.py), real git run
without a shell under the town's lock (git.py), the merge queue's requests (requests.py)
and steps (merges.py), and the API the front ends use (service.py)."""
