"""tap on Apache Airflow: a DAG factory (dags.py, imported only where Airflow is installed) and
the kernelspec that lets Airflow, in its own virtualenv, run tap's notebooks on tap's Python
(kernel.py, run from tap's environment).

Nothing here is imported by tap itself: tap never needs Airflow, and Airflow needs of tap only
this package's files and a `tap` kernelspec.
"""
