"""What we refuse to render: ``text`` screens a user's own words (torch-free, the bot runs it; its lists in ``words``),
``image`` checks every render with NudeNet's detector (the worker loads it once)."""
