"""Filters and transforms: CEL expressions over an event, checked in the daemon and evaluated
in a sandbox process that has bounds on time, memory and output."""
