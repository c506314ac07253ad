"""Not Python code: this file only gives k8s/tests a unique package name (k8s.tests) for pytest."""
