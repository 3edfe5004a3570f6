using Asterism.EndToEnd.Tests.Infrastructure;

[assembly: TestCaseOrderer(StepOrderer.TypeName, StepOrderer.AssemblyName)]
[assembly: TestFramework(StepFramework.TypeName, StepOrderer.AssemblyName)]
