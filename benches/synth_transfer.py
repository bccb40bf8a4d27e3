#!/usr/bin/env python3
"""Synthetic-to-real transfer check for `health-predict data synth` (a measurement, not a test).

Trains LightGBM (one thread, 300 trees) once on real rows and once on the same number of synthetic
rows, and scores both on the same held-out 20% of real patients. Also prints numeric means/stds and
the largest Spearman difference. Setup and run:

    python3 -m venv /tmp/venv-synth && /tmp/venv-synth/bin/pip install lightgbm scikit-learn pandas
    health-predict data synth --rows 100000 --seed 1 --out /tmp/synth.csv
    /tmp/venv-synth/bin/python benches/synth_transfer.py /tmp/synth.csv [../shared/data/diabetic_data.csv.gz]
"""
import sys, time, numpy as np, pandas as pd, lightgbm as lgb
from sklearn.metrics import roc_auc_score
from sklearn.linear_model import LogisticRegression
real = pd.read_csv(sys.argv[2] if len(sys.argv) > 2 else '../shared/data/diabetic_data.csv.gz', keep_default_na=False, dtype=str)
syn = pd.read_csv(sys.argv[1], keep_default_na=False, dtype=str)
num = ['admission_type_id','discharge_disposition_id','admission_source_id','time_in_hospital','num_lab_procedures','num_procedures','num_medications','number_outpatient','number_emergency','number_inpatient','number_diagnoses']
def prep(df):
    df = df[~df.discharge_disposition_id.astype(int).isin([11,13,14,19,20,21])].copy()
    X = pd.DataFrame({c: df[c].astype(int) for c in num})
    X['age'] = df.age.str.extract(r'\[(\d+)').astype(int)[0]
    for c in ['race','gender','max_glu_serum','A1Cresult','insulin','metformin','change','diabetesMed','medical_specialty','payer_code','glipizide','glyburide','pioglitazone','rosiglitazone']:
        X[c] = df[c]
    for c in ['diag_1','diag_2','diag_3']:
        X[c] = df[c].str[:3]
    y = (df.readmitted != 'NO').astype(int).values
    return X, y, df.patient_nbr.values
Xr, yr, pr = prep(real); Xs, ys, _ = prep(syn)
cats = [c for c in Xr.columns if c not in num + ['age']]
for c in cats:
    allv = pd.Categorical(pd.concat([Xr[c], Xs[c]])).categories
    Xr[c] = pd.Categorical(Xr[c], categories=allv); Xs[c] = pd.Categorical(Xs[c], categories=allv)
rng = np.random.RandomState(0)
up = np.unique(pr); rng.shuffle(up); test_p = set(up[: len(up)//5])
te = np.array([p in test_p for p in pr])
Xtr, ytr, Xte, yte = Xr[~te], yr[~te], Xr[te], yr[te]
print('real train', len(Xtr), 'test', len(Xte), 'synth', len(Xs), 'pos real', yr.mean().round(4), 'pos synth', ys.mean().round(4))
params = dict(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=50, verbose=-1, n_jobs=1)
n = min(len(Xtr), len(Xs))
for name, X, y in [('real', Xtr.iloc[:n], ytr[:n]), ('synth', Xs.iloc[:n], ys[:n])]:
    m = lgb.LGBMClassifier(**params).fit(X, y)
    print(name, 'rows', n, 'AUC on real test', round(roc_auc_score(yte, m.predict_proba(Xte)[:,1]), 4))
# numeric fidelity
for c in num + ['age']:
    a, b = Xr[c].astype(float), Xs[c].astype(float)
    print(f'{c:26s} mean {a.mean():7.3f} {b.mean():7.3f}  std {a.std():7.3f} {b.std():7.3f}')
print('spearman max abs diff', np.abs(Xr[num+['age']].astype(float).corr('spearman').values - Xs[num+['age']].astype(float).corr('spearman').values).max().round(4))
