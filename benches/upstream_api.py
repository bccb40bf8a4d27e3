"""A FastAPI + XGBoost service doing the upstream health-predict API's work per request, as the
baseline for benches/serve_load.sh. Written for this benchmark from the upstream's documented
behaviour (src/api/main.py and src/feature_engineering.py of the upstream project):

  * a Pydantic model of the 44 input fields (hyphenated aliases allowed),
  * per request: a one-row pandas DataFrame, clean_data ('?' -> NaN, drop weight / payer_code /
    medical_specialty and ids, fill race and diag_* with 'Unknown', drop expired/hospice rows),
    engineer_features (age -> age_ordinal), a fitted ColumnTransformer (StandardScaler on numbers,
    OneHotEncoder(handle_unknown='ignore') on categories), then predict and predict_proba.

  python upstream_api.py train DATA.csv.gz ARTIFACT.joblib   # fit preprocessor + XGBoost
  ARTIFACT=ARTIFACT.joblib uvicorn upstream_api:app --port PORT
"""

import os
import sys
from typing import Optional

import numpy as np
import pandas as pd

DROP = ["weight", "payer_code", "medical_specialty", "encounter_id", "patient_nbr"]
FILL = ["race", "diag_1", "diag_2", "diag_3"]
EXPIRED = [11, 13, 14, 19, 20, 21]
AGES = ["[0-10)", "[10-20)", "[20-30)", "[30-40)", "[40-50)", "[50-60)", "[60-70)",
        "[70-80)", "[80-90)", "[90-100)"]


def clean(df):
    df = df.replace("?", np.nan)
    df = df.drop(columns=[c for c in DROP if c in df.columns])
    for c in FILL:
        if c in df.columns:
            df[c] = df[c].fillna("Unknown")
    return df[~df["discharge_disposition_id"].isin(EXPIRED)]


def engineer(df):
    df = df.copy()
    df["age_ordinal"] = df["age"].map({a: i for i, a in enumerate(AGES)})
    return df


def train(data, out):
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from xgboost import XGBClassifier

    df = engineer(clean(pd.read_csv(data, dtype={"diag_1": str, "diag_2": str, "diag_3": str})))
    y = (df.pop("readmitted") != "NO").astype(int)
    df = df.drop(columns=["age"])
    numeric = df.select_dtypes(include=np.number).columns.tolist()
    categorical = df.select_dtypes(exclude=np.number).columns.tolist()
    pre = ColumnTransformer([
        ("num", StandardScaler(), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
    ])
    x = pre.fit_transform(df)
    model = XGBClassifier(n_estimators=100, max_depth=4, tree_method="hist", n_jobs=1)
    model.fit(x, y)
    joblib.dump({"pre": pre, "model": model, "columns": numeric + categorical}, out)
    print(f"trained on {len(df)} rows, {x.shape[1]} encoded columns")


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "train":
    train(sys.argv[2], sys.argv[3])
    sys.exit(0)

from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

app = FastAPI(title="upstream-equivalent")
artifact = None


class InferenceInput(BaseModel):
    model_config = ConfigDict(alias_generator=lambda s: s.replace("_", "-"), populate_by_name=True)
    race: Optional[str] = None
    gender: str
    age: str
    admission_type_id: int
    discharge_disposition_id: int
    admission_source_id: int
    time_in_hospital: int
    num_lab_procedures: int
    num_procedures: int
    num_medications: int
    number_outpatient: int
    number_emergency: int
    number_inpatient: int
    diag_1: Optional[str] = None
    diag_2: Optional[str] = None
    diag_3: Optional[str] = None
    number_diagnoses: int
    max_glu_serum: Optional[str] = None
    A1Cresult: Optional[str] = None
    metformin: str
    repaglinide: str
    nateglinide: str
    chlorpropamide: str
    glimepiride: str
    acetohexamide: str
    glipizide: str
    glyburide: str
    tolbutamide: str
    pioglitazone: str
    rosiglitazone: str
    acarbose: str
    miglitol: str
    troglitazone: str
    tolazamide: str
    examide: str
    citoglipton: str
    insulin: str
    glyburide_metformin: str
    glipizide_metformin: str
    glimepiride_pioglitazone: str
    metformin_rosiglitazone: str
    metformin_pioglitazone: str
    change: str
    diabetesMed: str


class InferenceResponse(BaseModel):
    prediction: int
    probability_score: float


@app.on_event("startup")
def load():
    global artifact
    import joblib
    artifact = joblib.load(os.environ["ARTIFACT"])


@app.get("/health")
def health():
    return {"status": "healthy", "model_loaded": artifact is not None}


@app.post("/predict", response_model=InferenceResponse)
def predict(item: InferenceInput):
    if artifact is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    df = pd.DataFrame([item.model_dump(by_alias=False)])
    df = df.rename(columns={c: c.replace("_", "-") for c in df.columns
                            if c.startswith(("glyburide_", "glipizide_", "glimepiride_", "metformin_"))})
    df = engineer(clean(df))
    x = artifact["pre"].transform(df[artifact["columns"]])
    prediction = artifact["model"].predict(x)[0]
    probability = artifact["model"].predict_proba(x)[0][1]
    return InferenceResponse(prediction=int(prediction), probability_score=float(probability))
