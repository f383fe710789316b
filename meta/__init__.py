"""neuromaml.meta"""
