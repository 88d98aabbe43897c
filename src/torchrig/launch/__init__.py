"""The host side of a workbench: its run plan, and bringing it up and down."""
