"""Lava Processes and ProcessModels of the emulator (input, label, readout).

Lava's compiler imports every module in the folder of a Process when it looks
for ProcessModels, each as a stand-alone module: keep only Process/ProcessModel
definitions here, use absolute imports, and do no work at import time.
"""
