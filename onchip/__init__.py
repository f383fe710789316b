"""neuromaml.onchip"""
