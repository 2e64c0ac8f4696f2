"""What a BAT OS image contains and how it grows up: genesis (the primordial
objects), the persona codex, and the migrations from every earlier schema
version to this one."""
