"""Certified robustness: numbers that are proofs, not attack results (notebook 09).

- `ibp`: interval bound propagation through the course's layers, the certificate it gives, and the
  loss of IBP training (Gowal et al. 2018);
- `milp`: exact verification of a small ReLU network as a mixed-integer linear program (SciPy's HiGHS);
- `smoothing`: randomised smoothing (Cohen et al. 2019), its prediction and its ℓ2 certified radius.

An attack gives an upper bound on robust accuracy (it found *some* adversarial examples), the exact
verifier the truth, a certificate a lower bound (it proved *some* digits robust):
certified ≤ exact ≤ attacked, digit by digit.
"""
