"""The Kubernetes API, as the agent uses it: a small client (in-cluster service account or a kubeconfig)
and the node-scoped pod cache (one list + watch of this node's pods) shared by every component that needs
pod metadata (``kubernetes_sd_configs`` role pod, the ``kubernetes`` transform).
"""
