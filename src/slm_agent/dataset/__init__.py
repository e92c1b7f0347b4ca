"""Fine-tuning data from logged LLM calls (``slm-agent dataset``; no ROS imports).

Sources become :class:`~slm_agent.dataset.records.Sample` conversations
(OpenAI/TRL ``messages`` + ``tools``): this package's run directories
(:mod:`.rundir`), ToolMind-format JSONL (:mod:`.toolmind`) and tau2 train-split
gold actions (:mod:`.tau2_gold`).  :mod:`.build` curates them (outcome filter,
de-duplication, :mod:`.scrub` personal data), clusters them into tasks and
splits train/validation by cluster (:mod:`.cluster`), renders each in a run's
strategy and serialization (:mod:`.render`) and writes the JSONL files with a
report of what was kept and dropped and why.
"""
