"""Benchmarks: the tap and the target against a bare-loop floor, side by side in one run.

Every script prints ratios measured in the same run on the same emulator, because this machine
is shared and absolute timings drift; nothing here is a timed assertion.
"""
