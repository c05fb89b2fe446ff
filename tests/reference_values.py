"""Published values the models must reproduce, each with its source. Kept in one place (STYLE habit 12)."""

# CDNOW cohort, 2,357 customers, weeks, calibration to 1997-09-30.
# Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", Marketing Science 24(2), Sec. 4:
BGNBD_CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BGNBD_CDNOW_LL = -9582.4
# Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions", p. 6 (and BTYD's
# pnbd.EstimateParameters on cdnowSummary):
PARETO_CDNOW = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PARETO_CDNOW_LL = -9595.0
# BTYDplus 1.2.0, mbgnbd.EstimateParameters(cdnowSummary$cbs):
MBGNBD_CDNOW = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
# Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", p. 4, on the 946 repeat buyers:
GAMMA_GAMMA_CDNOW = {"p": 6.25, "q": 3.74, "v": 15.44}
GAMMA_GAMMA_REPEAT_BUYERS = 946
# Fader, Hardie & Shang (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual Setting", Table 2,
# donations data (11,104 donors, 6 opportunities):
BGBB_DONATIONS = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
BGBB_DONATIONS_LL = -33225.6

# The CDNOW summary (BTYD cdnowSummary): repeat transactions in calibration and in the 39-week holdout.
CDNOW_CALIBRATION_REPEATS = 2457
CDNOW_HOLDOUT_REPEATS = 1882
CDNOW_CUSTOMERS = 2357
CDNOW_TRANSACTIONS = 6919
CDNOW_MASTER_CUSTOMERS = 23570
CDNOW_MASTER_TRANSACTIONS = 69659
# FHL 2005, Fig. 4 / Sec. 4: BG/NBD predicts about 1,653 repeat purchases in weeks 40-78 (actual 1,882).
BGNBD_CDNOW_HOLDOUT_PREDICTION = 1653
# The same holdout for the Pareto/NBD: about 1,665 (FHL 2005, Sec. 4, comparing the two models; a 12% under-forecast).
PARETO_CDNOW_HOLDOUT_PREDICTION = 1665

# CLVTools 0.11.2 on its simulated apparel data (apparelTrans + apparelStaticCov), weekly, estimation.split = 104
# (calibration to 2006-12-31), as quoted in issue 13 from CLVTools' own output: Pareto/NBD with Gender and Channel
# on both processes (coefficients as CLVTools' trans.* = purchase, life.* = dropout), the same without covariates,
# Gamma-Gamma, and the likelihood BG/NBD with covariates reaches at its boundary (no interior optimum there).
APPAREL_CALIBRATION_END = "2006-12-31"
PARETO_APPAREL_COV_LL = -5821.0627
PARETO_APPAREL_COV = {"r": 1.8387, "alpha": 92.944, "s": 0.59129, "beta": 49.506}
PARETO_APPAREL_COV_COEFFICIENTS = {
    "purchase": {"Gender": 0.28598, "Channel": 0.62394},
    "dropout": {"Gender": -0.64279, "Channel": 0.79017},
}
PARETO_APPAREL_LL = -5848.0978
PARETO_APPAREL = {"r": 1.4490, "alpha": 48.636, "s": 0.56126, "beta": 46.884}
GAMMA_GAMMA_APPAREL = {"p": 3.0990, "q": 5.6537, "v": 56.504}
BGNBD_APPAREL_COV_BOUNDARY_LL = -5839.86
