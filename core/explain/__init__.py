"""Explanations of model scores: Grad-CAM, GradientShap and KernelShap, their faithfulness checks, overlays.

captum is imported only inside this package (rule R3). Every call leaves the shared model as it
found it: no hooks, no gradients, no changed parameters (rule R12); the randomization test
works on a deep copy.
"""
