"""Tests of the LUKS2 layer; cryptsetup is the independent judge of what we write."""
