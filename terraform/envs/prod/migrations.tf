# State history: a plan after these changes moves or forgets; it never destroys and recreates.

# The modules used to be called from this root directly; modules/platform now wires them.
moved {
  from = module.network
  to   = module.platform.module.network
}

moved {
  from = module.eks
  to   = module.platform.module.eks
}

moved {
  from = module.karpenter
  to   = module.platform.module.karpenter
}

moved {
  from = module.models
  to   = module.platform.module.models
}

moved {
  from = module.ci
  to   = module.platform.module.ci
}

moved {
  from = module.edge
  to   = module.platform.module.edge
}

moved {
  from = module.cache
  to   = module.platform.module.cache
}

# The repositories used to be per environment: forget them without deleting images (delete or import
# them into terraform/shared by hand).
removed {
  from = module.registry

  lifecycle {
    destroy = false
  }
}
