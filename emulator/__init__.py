"""neuromaml.emulator"""
