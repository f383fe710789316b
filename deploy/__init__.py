"""neuromaml.deploy"""
