"""Explanations of model scores: Grad-CAM now, SHAP-style methods later; overlays and localization.

captum is imported only inside this package (rule R3). Every call leaves the shared model as it
found it: no hooks, no gradients, no changed parameters (rule R12).
"""
